"""The parts behind :mod:`calibration.quotes`: reading, format detection, one loader per format, validation.

Import the public API from :mod:`calibration.quotes`; the modules here are its implementation and may change.
Dependency order (no cycles): ``locate`` < ``values`` < ``canonical`` < ``deribit``, ``cboe``, ``optionmetrics``;
``locate``, ``values`` < ``reading``; everything < ``formats``.
"""
