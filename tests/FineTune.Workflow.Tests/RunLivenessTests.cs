using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Tests;

/// <summary>
/// A run another process runs reads Running from the store: while a call of it runs, and in the moment between two calls,
/// which is no reason to say it stopped (a sweep between rungs read Stopped).
/// </summary>
public sealed class RunLivenessTests
{
    [Fact]
    public async Task ARunBetweenTwoCallsIsRunningButNoCallIsAndOneLongEndedIsNot()
    {
        string work = Directory.CreateTempSubdirectory("liveness-").FullName;
        try
        {
            var store = new Storage.LocalFolderArtifactStore(work);
            var options = Options.Create(new WorkflowOptions { WorkDirectory = Path.Combine(work, "cache"), CancelPollInterval = TimeSpan.FromMilliseconds(100) });
            var runs = new RunControl(store, new UserUploads(store), new RunScratch(options), new RunSlots(options, TimeProvider.System), options);
            var job = new FineTuneJob("a-trial", JobSpecReader.Read("""{ "dataset": { "location": "blob:d/" } }""", localPaths: false), ControlRun: "a-sweep");
            Assert.False(await runs.IsRunningAsync("a-sweep", default));

            using (var stop = new CancellationTokenSource())
            {
                await using (runs.WatchForCancel(job, stop))
                {
                    await WaitUntilAsync(() => runs.IsAnyCallRunningAsync("a-sweep", default));
                    Assert.True(await runs.IsRunningAsync("a-sweep", default));
                }
            }

            // The call ended and the next has not begun: no call runs (a restart need not wait), the sweep still runs.
            Assert.False(await runs.IsAnyCallRunningAsync("a-sweep", default));
            Assert.True(await runs.IsRunningAsync("a-sweep", default));

            // Its last call ended long ago: stopped.
            File.SetLastWriteTimeUtc(Directory.EnumerateFiles(work, "last-call-ended", SearchOption.AllDirectories).Single(), DateTime.UtcNow.AddMinutes(-1));
            Assert.False(await runs.IsRunningAsync("a-sweep", default));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!await condition()) await Task.Delay(20, timeout.Token);
    }
}
