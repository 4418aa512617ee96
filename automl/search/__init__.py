"""The search: the supervisor (the ``automl run`` process), its worker processes, the
Optuna study's storage, samplers and pruners, and the search space with its checks."""
