"""The I/O around the pure ``models/`` package: ``kuailv train``'s pipeline (simulate, fold, fit, evaluate,
save, with timings), model artifacts on disk (``artifacts``) and the evaluation report (``report``)."""
