namespace FineTune.Core.Weights;

/// <summary>Where pretrained weights may come from and where verified copies are kept (bound from configuration).</summary>
public sealed class WeightsFetchOptions
{
    public const string SectionName = "Weights";

    /// <summary>Hosts weights may be downloaded from; any other host is refused.</summary>
    public IList<string> AllowedHosts { get; set; } = ["download.pytorch.org"];

    /// <summary>
    /// Also allow Hugging Face hub downloads (https://huggingface.co/OWNER/NAME/resolve/REVISION/FILE, verified
    /// by the job's sha256): the hub and the storage hosts it redirects file downloads to.
    /// </summary>
    public bool AllowHuggingFaceHub { get; set; }

    public static IReadOnlyList<string> HuggingFaceHosts { get; } =
        ["huggingface.co", "cdn-lfs.huggingface.co", "cdn-lfs-us-1.huggingface.co", "cdn-lfs.hf.co", "cas-bridge.xethub.hf.co"];

    /// <summary>The hosts a download may come from: <see cref="AllowedHosts"/>, and the hub's when allowed.</summary>
    public IEnumerable<string> DownloadHosts => AllowHuggingFaceHub ? AllowedHosts.Concat(HuggingFaceHosts) : AllowedHosts;

    /// <summary>Where weights named by torchvision's names are downloaded from: torchvision's own folder, or a mirror of it (its host must be allowed).</summary>
    public string TorchvisionModelsUrl { get; set; } = TorchvisionWeights.ModelsUrl;

    /// <summary>Plain http for the allowed hosts, e.g. a mirror on the local network. Off: https only.</summary>
    public bool AllowHttp { get; set; }

    /// <summary>A download larger than this is stopped and discarded.</summary>
    public long MaxBytes { get; set; } = 2L * 1024 * 1024 * 1024;

    /// <summary>Verified weights, named by their SHA-256, so each is fetched once.</summary>
    public string CacheDirectory { get; set; } = Path.Combine(".finetune", "weights");
}
