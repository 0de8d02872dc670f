"""One module per transport; chosen by URL scheme in firmware_bridge.transport."""
