"""The backends behind bsa.provider.Provider: one module each (PROVIDERS in bsa/provider.py)."""
