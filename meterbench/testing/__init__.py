"""meterbench.testing: real local services shared by the tests and the simulated bench: a
Mosquitto broker on 127.0.0.1, socat serial pseudo-terminal pairs, a local Dask cluster."""

from meterbench.testing.services import (
    LocalDaskCluster,
    MosquittoBroker,
    SocatPtyPair,
    free_tcp_port,
    require_binary,
)

__all__ = ["LocalDaskCluster", "MosquittoBroker", "SocatPtyPair", "free_tcp_port", "require_binary"]
