using FineTune.Workflow.Services;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace FineTune.Workflow.Tests;

/// <summary>
/// Issue 23, item 7: admission on a worker. At most N runs hold a slot, their estimated memory together within the budget;
/// the rest wait first come first served, and neither a waiter nor a holder that went away can stall the queue.
/// </summary>
public sealed class RunSlotsTests
{
    private const long MB = 1 << 20;

    private static (RunSlots Slots, FakeTimeProvider Time) Slots(int capacity, long budgetMB = 10_000)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var options = new WorkflowOptions { MaxConcurrentRuns = capacity, MemoryBudgetMB = budgetMB, AdmissionWait = TimeSpan.Zero };
        return (new RunSlots(Options.Create(options), time), time);
    }

    [Fact]
    public async Task AtMostCapacityRunsHoldASlotAndTheRestQueueInOrder()
    {
        var (slots, _) = Slots(capacity: 2);

        Assert.True((await slots.EnterAsync("a", MB, default)).Admitted);
        Assert.True((await slots.EnterAsync("b", MB, default)).Admitted);
        var c = await slots.EnterAsync("c", MB, default);
        var d = await slots.EnterAsync("d", MB, default);

        Assert.Equal((false, 1), (c.Admitted, c.Position));
        Assert.Equal((false, 2), (d.Admitted, d.Position));
        Assert.True(c.RetryAfter > TimeSpan.Zero);
        // A holder asking again (a new generation, a replayed ask) keeps its slot.
        Assert.True((await slots.EnterAsync("a", MB, default)).Admitted);

        slots.Leave("a");
        // The head of the queue only: d may not pass c.
        Assert.False((await slots.EnterAsync("d", MB, default)).Admitted);
        Assert.True((await slots.EnterAsync("c", MB, default)).Admitted);
        Assert.Equal(1, (await slots.EnterAsync("d", MB, default)).Position);
        Assert.Equal(["b", "c"], slots.Holders.Order());
    }

    [Fact]
    public async Task RunsTogetherStayWithinTheMemoryBudgetAndARunAloneIsAlwaysAdmitted()
    {
        var (slots, _) = Slots(capacity: 8, budgetMB: 1000);

        Assert.True((await slots.EnterAsync("big", 900 * MB, default)).Admitted);
        Assert.False((await slots.EnterAsync("medium", 200 * MB, default)).Admitted);
        // First come first served: the small run behind it waits too, or a large run could starve.
        Assert.False((await slots.EnterAsync("small", 50 * MB, default)).Admitted);

        slots.Leave("big");
        Assert.True((await slots.EnterAsync("medium", 200 * MB, default)).Admitted);
        Assert.True((await slots.EnterAsync("small", 50 * MB, default)).Admitted);

        slots.Leave("medium");
        slots.Leave("small");
        // Over the budget alone: submit refuses such specs, so a run that got here is admitted when nothing runs.
        Assert.True((await slots.EnterAsync("huge", 2000 * MB, default)).Admitted);
    }

    /// <summary>
    /// Admitted here but trained by another worker of the hub (no activity of it ever ran here, and that worker's LeaveRun
    /// cannot free this one's slot): the slot expires as a waiter's place does, not after the holders' long expiry.
    /// </summary>
    [Fact]
    public async Task AHolderNoneOfWhoseActivitiesRanHereExpiresLikeAWaiter()
    {
        var (slots, time) = Slots(capacity: 1);
        Assert.True((await slots.EnterAsync("elsewhere", MB, default)).Admitted);
        Assert.Equal(1, (await slots.EnterAsync("next", MB, default)).Position);
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.False((await slots.EnterAsync("next", MB, default)).Admitted);
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.True((await slots.EnterAsync("next", MB, default)).Admitted);
    }

    [Fact]
    public async Task AWaiterThatStopsAskingLosesItsPlaceAndAnIdleHolderItsSlot()
    {
        var (slots, time) = Slots(capacity: 1);
        Assert.True((await slots.EnterAsync("holder", MB, default)).Admitted);
        slots.Touch("holder");
        Assert.Equal(1, (await slots.EnterAsync("gone", MB, default)).Position);
        Assert.Equal(2, (await slots.EnterAsync("waiting", MB, default)).Position);

        // "waiting" keeps asking; "gone" (terminated on another worker) does not.
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal(2, (await slots.EnterAsync("waiting", MB, default)).Position);
        time.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal(1, (await slots.EnterAsync("waiting", MB, default)).Position);

        // The holder's activities keep its slot while they run; silent past the expiry, it loses it.
        for (int minute = 0; minute < 12; minute++)
        {
            slots.Touch("holder");
            time.Advance(TimeSpan.FromMinutes(1));
            Assert.False((await slots.EnterAsync("waiting", MB, default)).Admitted);
        }
        time.Advance(TimeSpan.FromMinutes(11));
        Assert.True((await slots.EnterAsync("waiting", MB, default)).Admitted);
        Assert.Equal(["waiting"], slots.Holders);
    }

    [Fact]
    public async Task AnAskWaitingForASlotIsAdmittedWhenOneFrees()
    {
        var options = new WorkflowOptions { MaxConcurrentRuns = 1, AdmissionWait = TimeSpan.FromMinutes(5) };
        var slots = new RunSlots(Options.Create(options), TimeProvider.System);
        Assert.True((await slots.EnterAsync("first", MB, default)).Admitted);

        // Joining the queue is answered at once (the status says queued); asking again waits for a slot.
        var joined = await slots.EnterAsync("second", MB, default).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((false, 1), (joined.Admitted, joined.Position));
        var asking = slots.EnterAsync("second", MB, default);
        await Task.Delay(200);
        Assert.False(asking.IsCompleted);
        slots.Leave("first");

        Assert.True((await asking.WaitAsync(TimeSpan.FromSeconds(10))).Admitted);
    }

    [Fact]
    public async Task ACancelledRunLeavesTheQueue()
    {
        var (slots, _) = Slots(capacity: 1);
        Assert.True((await slots.EnterAsync("a", MB, default)).Admitted);
        Assert.Equal(1, (await slots.EnterAsync("cancelled", MB, default)).Position);
        Assert.Equal(2, (await slots.EnterAsync("b", MB, default)).Position);

        slots.Leave("cancelled");

        Assert.Equal(1, (await slots.EnterAsync("b", MB, default)).Position);
    }
}
