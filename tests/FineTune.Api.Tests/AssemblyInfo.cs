// Each test trains in a `finetune serve` process; two at once would only share the machine's cores.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
