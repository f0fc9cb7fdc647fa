"""Device kinds: one package per kind (config layout, request codec, handler, and its ``KIND``), and the
registry that finds them (:mod:`.registry`: kinds as data, the stored-settings rule, ``open_device``)."""
