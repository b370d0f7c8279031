// Runs train models seeded from torch's process-wide generator and are compared bit for bit.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
