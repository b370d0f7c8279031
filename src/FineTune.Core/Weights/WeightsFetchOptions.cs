namespace FineTune.Core.Weights;

/// <summary>Where pretrained weights may come from and where verified copies are kept (bound from configuration).</summary>
public sealed class WeightsFetchOptions
{
    public const string SectionName = "Weights";

    /// <summary>Hosts weights may be downloaded from; any other host is refused.</summary>
    public IList<string> AllowedHosts { get; set; } = ["download.pytorch.org"];

    /// <summary>Plain http for the allowed hosts, e.g. a mirror on the local network. Off: https only.</summary>
    public bool AllowHttp { get; set; }

    /// <summary>A download larger than this is stopped and discarded.</summary>
    public long MaxBytes { get; set; } = 2L * 1024 * 1024 * 1024;

    /// <summary>Verified weights, named by their SHA-256, so each is fetched once.</summary>
    public string CacheDirectory { get; set; } = Path.Combine(".finetune", "weights");
}
