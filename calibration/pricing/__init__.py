"""Characteristic-function pricing shared by the Heston, Merton and Bates models (:mod:`.fourier`)."""
