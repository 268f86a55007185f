from ..errors import Unsupported


def lower_matmul(kernel):
    raise Unsupported("matmul kernels are not generated yet")
