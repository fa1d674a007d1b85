"""BCPM gateway: Schneider/Veris PowerLogic BCPM meters on RS-485, republished as BACnet/IP, SNMP and Modbus TCP.

Data flows one way, meter -> bus -> node cache -> faces, and writes come back the same road:

    gateway.pointmap   what every register means (data)
    gateway.bus        the one owner of the serial line
    gateway.nodes      discovery, polling, the cache, events, validated writes
    gateway.sim        a faithful BCPM simulator behind a virtual serial line
    gateway.app        builds and runs everything from the configuration
"""
