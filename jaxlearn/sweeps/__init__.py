"""Sweeps: many trials of one config, grouped into vectorised programs where they can be."""
