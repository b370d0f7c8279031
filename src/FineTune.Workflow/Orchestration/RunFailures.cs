using FineTune.Core;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// A failure no retry can mend: the orchestration's retry policy gives up at once on these (and on
/// <see cref="BadInputException"/>), and the run fails with the message.
/// </summary>
public abstract class PermanentRunFailureException(string message) : Exception(message);

/// <summary>The run was cancelled: the activity under way stopped (a training chunk at a step boundary, with a checkpoint there).</summary>
public sealed class RunCancelledException : PermanentRunFailureException
{
    public RunCancelledException(string jobId, long step)
        : base($"run '{jobId}' was cancelled; it stopped at step {step}, checkpointed: restart it to continue")
    {
    }

    /// <summary>A step other than training (fetching weights, preparing, evaluating, publishing) stopped where it was: a restart does it again.</summary>
    public RunCancelledException(string jobId)
        : base($"run '{jobId}' was cancelled: restart it to continue from its last checkpoint")
    {
    }
}

/// <summary>
/// One chunk was started too often without finishing: the worker running it keeps dying (killed for memory,
/// most likely), which no exception reports, so only the count in the store tells.
/// </summary>
public sealed class ChunkAttemptsExhaustedException(string jobId, long fromStep, int attempts)
    : PermanentRunFailureException($"run '{jobId}': the chunk from step {fromStep} was started {attempts} times without finishing; "
        + "its worker keeps stopping (out of memory?): try a smaller batch size or a larger worker, then restart the run");

/// <summary>A job id already bound to another spec: reusing it would resume the other run's state with this spec.</summary>
public sealed class SpecConflictException(string jobId, string boundSha256, string givenSha256)
    : BadInputException($"job id '{jobId}' is bound to spec sha256:{boundSha256}, not to this spec (sha256:{givenSha256}): "
        + "use another job id, or purge the run first")
{
    public string JobId { get; } = jobId;
    public string BoundSha256 { get; } = boundSha256;
    public string GivenSha256 { get; } = givenSha256;
}

/// <summary>
/// A chunk came back without moving the run forward: retrying would repeat it forever (a livelock), so the run
/// fails and says where it stuck.
/// </summary>
public sealed class ChunkDidNotAdvanceException(string jobId, long fromStep, long returnedStep)
    : PermanentRunFailureException($"run '{jobId}': the chunk from step {fromStep} returned step {returnedStep}; training does not advance, "
        + "so the run stops here instead of repeating it (are its checkpoints being damaged or removed?)");

/// <summary>
/// The worker's disk is full. Retrying does not free it, and retrying for the whole retry budget hides it (a run
/// that stays "fetching weights" for half an hour): the run fails at once and says so. The message names no path,
/// since HTTP callers see it; a restart continues from the last checkpoint once space is freed.
/// </summary>
public sealed class WorkerDiskFullException(string jobId)
    : PermanentRunFailureException($"run '{jobId}': this worker's disk is full (no space left on device): free some space, "
        + "then restart the run to continue from its last checkpoint")
{
    /// <summary>
    /// Whether <paramref name="failure"/> or an exception inside it is a full disk: Linux's ENOSPC (.NET reports the errno
    /// as the HResult), Windows' ERROR_DISK_FULL and ERROR_HANDLE_DISK_FULL.
    /// </summary>
    public static bool Is(Exception? failure)
    {
        for (var e = failure; e is not null; e = e.InnerException)
            if (e is IOException { HResult: 28 or unchecked((int)0x80070070) or unchecked((int)0x80070027) }) return true;
        return false;
    }
}
