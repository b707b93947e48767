//! The `workflow/v2.0` YAML format: loader, validation, schema and step modes.
