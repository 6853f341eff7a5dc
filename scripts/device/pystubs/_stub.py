"""Stand-ins for packages tensorizer imports but a local-file load never uses (boto3,
botocore, redis, libnacl): the GPU machine has no network to install them from. Any
attribute is a dummy class; libnacl's byte-size constants are ints. Using one raises."""


class _Dummy:
    __version__ = "0-stub"

    def __init__(self, *a, **k):
        raise RuntimeError("this is a stub package (scripts/device/pystubs): tensorize's GPU checks load local files only")


def module_getattr(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name.startswith("crypto_") and name.isupper() is False and name.upper().endswith("BYTES"):
        return 32
    return type(name, (_Dummy,), {})
