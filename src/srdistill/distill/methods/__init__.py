"""Built-in distillation methods, one module each; registered in pyproject.toml's
``srdistill.methods`` entry-point group exactly as a third-party method would be."""
