"""The upstream serial port toward the building system: a Modbus RTU slave serving the meters."""

from gateway.upstream.face import UpstreamFace
from gateway.upstream.rtu import RtuSlave, SlaveCounts

__all__ = ["RtuSlave", "SlaveCounts", "UpstreamFace"]
