"""A turn's whole life: its slot on the session, its control (confirm, cancel), its store, its loop."""
