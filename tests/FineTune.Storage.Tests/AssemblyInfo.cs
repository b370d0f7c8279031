// Tests seed torch's process-wide generator and compare runs bit for bit; test classes running in
// parallel would draw from it in between, so this assembly runs them one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
