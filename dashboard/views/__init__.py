"""Console views: each checks access, calls one selector or service, renders one page."""
