"""Models over the event history: forecasts, policies and their evaluation. Pure unless a module says otherwise."""
