"""What is done with a trained model or an architecture besides training: evaluation,
prediction, throughput benchmarks and plots."""
