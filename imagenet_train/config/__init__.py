"""What a config file is built from; config files load it by path, so it imports neither TensorFlow nor JAX.

- `schema`: every field with its default (`base_config()` and its blocks) and `epochs_to_steps`.
- `recipes`: the recipes several configs share (datasets and their splits, pipelines, optimizers).
- `arguments`: a config file's `:ARG` (`parse_arg`, `check_choice`).
- `smoke`: a recipe's two-step smoke variant (`make_smoke`).

It lives in the package rather than in configs/ so that a config file loads from any working
directory: config files are read by path, not imported as a package.
"""
