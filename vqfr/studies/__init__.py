"""Studies built on the one-pass engine of ``vqfr.run``: ablations (``ablate``), paper-table runs
(``--table SPEC``) and model profiling (``profile``)."""
