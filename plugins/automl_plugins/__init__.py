"""automl's built-in plugins. Each module is registered through the ``automl`` entry-point
group in automl's own pyproject.toml, exactly as a third-party package registers its own."""
