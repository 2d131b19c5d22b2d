"""Configuration: YAML files read with their line numbers (yamlfile.py), the inventory of devices,
the suite a team checks in, and the settings of a run."""
