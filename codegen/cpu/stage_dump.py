"""Each stage's output written under the debug dir, as it is made (stages.py names the stages):

    <folder>/<label>.<NN>-<stage>[.<schedule>].<fx | mlir | o>

`label` is a kernel's name (k0_reduction) for the per-kernel stages and for a build of that
kernel alone, `graph` for a build of several kernels; builds carry their schedule. A dump never
changes what runs: a folder that cannot be written is reported once and dumping stops; a value
that cannot be printed is skipped with a log line.
"""
from __future__ import annotations

import logging
import os
import threading

import torch.fx as fx

log = logging.getLogger("fastc")


class StageDump:
    def __init__(self, folder: str | None):
        self.folder = folder
        self._lock = threading.Lock()

    def write(self, label: str, number: int, stage: str, value, schedule: str | None = None,
              note: str | None = None) -> None:
        """Writes `value`, the output of stage `number` (`stage`) for `label`; `note` becomes a
        first comment line of a text dump."""
        if self.folder is None:
            return
        stem = os.path.join(self.folder, f"{label}.{number:02d}-{stage}" + (f".{schedule}" if schedule else ""))
        try:
            os.makedirs(self.folder, exist_ok=True)
            if hasattr(value, "dump_to_object_file"):  # an ExecutionEngine: its machine code
                value.dump_to_object_file(stem + ".o")
                return
            if isinstance(value, fx.GraphModule):
                from fastc.ir.printer import print_graph
                text, ext = print_graph(value, name=label), "fx"
            else:
                text, ext = str(value), "mlir"
            comment = "#" if ext == "fx" else "//"
            with open(stem + "." + ext, "w") as f:
                f.write((f"{comment} {note}\n" if note else "") + text)
        except OSError as e:
            with self._lock:
                if self.folder is not None:
                    log.warning("fastc: cannot write the native stages' dump in %r (%s); compiling without it",
                                self.folder, e)
                self.folder = None
        except Exception as e:  # noqa: BLE001 - a dump never fails a compilation
            log.warning("fastc: stage %s of %s not dumped (%s: %s)", stage, label, type(e).__name__, e)


NO_DUMP = StageDump(None)


def schedule_label(schedule) -> str:
    """`serial`, `parallel`, `serial-t1x64-vec-u2`: a CPU schedule in a file name."""
    label = "parallel" if schedule.parallel else "serial"
    if getattr(schedule, "loops", False):
        label += f"-t{schedule.tile_outer}x{schedule.tile_inner}"
        label += "-vec" if schedule.vectorize else ""
        label += f"-u{schedule.unroll}" if schedule.unroll > 1 else ""
    return label
