// Runs fine-tune models seeded from torch's process-wide generator.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
