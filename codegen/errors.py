"""The one error code generation raises on purpose."""


class Unsupported(Exception):
    """A kernel (or an op in it) that this code generator cannot lower.

    Not a user error: the wrapper runs such a kernel's ops as ATen calls and records the reason,
    which names the op (or the shape situation) that stopped the lowering.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
