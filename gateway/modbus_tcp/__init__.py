"""Modbus TCP face: several masters share the meters; polled registers come from the cache."""

from gateway.modbus_tcp.server import MasterStats, ModbusTcpFace

__all__ = ["MasterStats", "ModbusTcpFace"]
