using System.Reflection;
using DurableTask.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTune.Cli.Tests;

/// <summary>
/// <see cref="RenewedActivityLocks"/> against a provider that records what it is asked (the two-worker sweep of
/// <see cref="SweepCommandTests"/> is where an unrenewed lock showed: its activities ran twice at once).
/// </summary>
public sealed class RenewedActivityLocksTests
{
    [Fact]
    public async Task ALockedActivityIsRenewedUntilItCompletesAndNeverAfter()
    {
        var provider = Provider.Create(lease: TimeSpan.FromSeconds(1));
        var service = new RenewedActivityLocks(provider.Service, NullLogger<RenewedActivityLocks>.Instance);
        var workItem = await service.LockNextTaskActivityWorkItem(TimeSpan.Zero, CancellationToken.None);

        // Renewed halfway to each expiry, so the lock never lapses while the activity runs.
        await provider.RenewedAsync(3);
        Assert.True(workItem.LockedUntilUtc > DateTime.UtcNow, "the lock lapsed while the activity ran");

        await service.CompleteTaskActivityWorkItemAsync(workItem, new TaskMessage());
        int atCompletion = provider.Renewals;
        await Task.Delay(600);
        // None after: a renewal changes the message's pop receipt, with which the provider deletes it.
        Assert.Equal(atCompletion, provider.Renewals);
        Assert.Equal(["lock", .. Enumerable.Repeat("renew", atCompletion), "complete"], provider.Calls);
    }

    [Fact]
    public async Task ALockThatNeverExpiresOrThatTheProviderGaveUpIsNotRenewed()
    {
        // The in-memory service's locks never expire.
        var forever = Provider.Create(lease: TimeSpan.MaxValue);
        var service = new RenewedActivityLocks(forever.Service, NullLogger<RenewedActivityLocks>.Instance);
        var workItem = await service.LockNextTaskActivityWorkItem(TimeSpan.Zero, CancellationToken.None);
        await Task.Delay(300);
        await service.AbandonTaskActivityWorkItemAsync(workItem);
        Assert.Equal(["lock", "abandon"], forever.Calls);

        // A provider that no longer holds the message expires the work item on renewal: renewing stops there.
        var lost = Provider.Create(lease: TimeSpan.FromMilliseconds(200), heldFor: 1);
        service = new RenewedActivityLocks(lost.Service, NullLogger<RenewedActivityLocks>.Instance);
        workItem = await service.LockNextTaskActivityWorkItem(TimeSpan.Zero, CancellationToken.None);
        await lost.RenewedAsync(2);
        await Task.Delay(500);
        Assert.Equal(2, lost.Renewals);
        await service.CompleteTaskActivityWorkItemAsync(workItem, new TaskMessage());
    }

    [Fact]
    public async Task ARenewalThatFailsIsTriedAgainWhileTheLockLasts()
    {
        var flaky = Provider.Create(lease: TimeSpan.FromSeconds(2), failures: 1);
        var service = new RenewedActivityLocks(flaky.Service, NullLogger<RenewedActivityLocks>.Instance);
        var workItem = await service.LockNextTaskActivityWorkItem(TimeSpan.Zero, CancellationToken.None);
        await flaky.RenewedAsync(2);
        Assert.Equal("failed", flaky.Calls[1]);
        Assert.True(workItem.LockedUntilUtc > DateTime.UtcNow, "the lock lapsed after one failed renewal");
        await service.CompleteTaskActivityWorkItemAsync(workItem, new TaskMessage());
    }

    /// <summary>
    /// An orchestration service that hands out one activity work item locked for <c>lease</c>, fails its first
    /// <c>failures</c> renewals, renews it for as long again <c>heldFor</c> times, then expires it as Azure Storage's
    /// provider does once it holds the message no more.
    /// </summary>
    public class Provider : DispatchProxy
    {
        private TimeSpan _lease;
        private int _heldFor;
        private int _failures;
        private readonly List<string> _calls = [];

        public IOrchestrationService Service { get; private set; } = null!;

        public IReadOnlyList<string> Calls
        {
            get
            {
                lock (_calls) return [.. _calls];
            }
        }

        public int Renewals => Calls.Count(c => c == "renew");

        /// <summary>Once <paramref name="count"/> renewals are made (a timer fires late on a busy machine: no fixed wait).</summary>
        public async Task RenewedAsync(int count)
        {
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (Renewals < count)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{Renewals} renewals of {count}: {string.Join(", ", Calls)}");
                await Task.Delay(20);
            }
        }

        public static Provider Create(TimeSpan lease, int heldFor = int.MaxValue, int failures = 0)
        {
            var service = Create<IOrchestrationService, Provider>();
            var provider = (Provider)(object)service;
            (provider._lease, provider._heldFor, provider._failures, provider.Service) = (lease, heldFor, failures, service);
            return provider;
        }

        private static DateTime Until(TimeSpan lease) => lease == TimeSpan.MaxValue ? DateTime.MaxValue : DateTime.UtcNow + lease;

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            switch (targetMethod!.Name)
            {
                case nameof(IOrchestrationService.LockNextTaskActivityWorkItem):
                    Record("lock");
                    return Task.FromResult(new TaskActivityWorkItem { Id = "activity", LockedUntilUtc = Until(_lease) });
                case nameof(IOrchestrationService.RenewTaskActivityWorkItemLockAsync):
                    var workItem = (TaskActivityWorkItem)args![0]!;
                    if (Interlocked.Decrement(ref _failures) >= 0)
                    {
                        Record("failed");
                        return Task.FromException<TaskActivityWorkItem>(new InvalidOperationException("a storage hiccup"));
                    }
                    Record("renew");
                    workItem.LockedUntilUtc = Renewals <= _heldFor ? Until(_lease) : DateTime.UtcNow;
                    return Task.FromResult(workItem);
                case nameof(IOrchestrationService.CompleteTaskActivityWorkItemAsync):
                    Record("complete");
                    return Task.CompletedTask;
                case nameof(IOrchestrationService.AbandonTaskActivityWorkItemAsync):
                    Record("abandon");
                    return Task.CompletedTask;
                default:
                    throw new InvalidOperationException($"{targetMethod.Name} is not what this test expects");
            }
        }

        private void Record(string call)
        {
            lock (_calls) _calls.Add(call);
        }
    }
}
