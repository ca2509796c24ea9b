"""meterbench.testing: real local services shared by the tests and the simulated bench: a
Mosquitto broker on 127.0.0.1 and socat serial pseudo-terminal pairs."""

from meterbench.testing.services import MosquittoBroker, SocatPtyPair, free_tcp_port, require_binary

__all__ = ["MosquittoBroker", "SocatPtyPair", "free_tcp_port", "require_binary"]
