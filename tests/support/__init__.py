"""What tests (and benches) share: sinks, factories, real tools."""
