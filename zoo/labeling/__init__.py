"""What a model's outputs mean: the task (one class per image, or a set of labels), with its
label encoding, activation, loss and monitor defaults, metrics, the evaluation loop and the
prediction format. Training, evaluation, prediction, export and serving all ask the run's task,
so a task is added here once rather than as a branch in each of them."""
