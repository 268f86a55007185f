"""The Dask cluster `collect` and `train` send work to with `--scheduler ADDRESS`."""
from __future__ import annotations

from fastc.command_input import CommandError


def dask_client(address: str):
    """A distributed.Client connected to the scheduler at `address`; CommandError naming the
    address if it cannot connect."""
    from distributed import Client
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as e:
        raise CommandError(f"cannot reach the Dask scheduler at {address}: {type(e).__name__}: {e}") from None
