namespace FineTune.Cli;

/// <summary>What <c>finetune</c> exits with; the README lists them for scripts.</summary>
internal static class ExitCodes
{
    public const int Succeeded = 0;
    /// <summary>The run failed, or predict could not classify some image (its JSON says which and why).</summary>
    public const int Failed = 1;
    /// <summary>The job spec, the dataset, the weights or an argument is wrong, found before or during the run: fix the input, retrying will not help.</summary>
    public const int BadInput = 2;
    /// <summary>The demo's photos (Debian's tuxpaint-stamps-default) are not installed and could not be.</summary>
    public const int MissingPhotos = 3;
    public const int StorageUnreachable = 4;
    /// <summary>Interrupted (SIGINT's 128 + 2): the same command resumes from the last checkpoint.</summary>
    public const int Cancelled = 130;
}
