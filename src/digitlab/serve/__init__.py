"""Web app and REST API (pip install 'digitlab[serve]')."""
