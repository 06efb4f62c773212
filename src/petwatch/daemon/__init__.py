"""The process that owns the library: lifecycle, single instance, systemd, the socket API."""
