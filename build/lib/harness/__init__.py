"""edgebench host controller: convert, ship, measure, store, report, gate."""

__version__ = "0.1.0"
