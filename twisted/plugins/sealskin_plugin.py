"""twistd plugin: ``twistd sealskin``. Names its module by string so that
``twistd --help`` imports nothing heavy."""

from twisted.application.service import ServiceMaker

sealskin = ServiceMaker(
    "SealSkin Server",
    "sealskin.service",
    "Encrypted control API and TLS session proxy for containerised desktop apps.",
    "sealskin",
)
