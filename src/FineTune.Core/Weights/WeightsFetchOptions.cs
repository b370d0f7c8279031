namespace FineTune.Core.Weights;

/// <summary>Where pretrained weights may come from and where verified copies are kept (bound from configuration).</summary>
public sealed class WeightsFetchOptions
{
    public const string SectionName = "Weights";

    /// <summary>torchvision's download host: the default allow-list, and the host whose file names carry a hash prefix.</summary>
    public const string DefaultHost = "download.pytorch.org";

    /// <summary>
    /// Hosts weights may be downloaded from, every redirect hop included; any other host is refused. Null: only
    /// <see cref="DefaultHost"/>. A configured list replaces that default (<c>Weights__AllowedHosts__0=mirror.example</c>);
    /// a list of one blank entry (<c>Weights__AllowedHosts__0=</c>) allows no download at all.
    /// </summary>
    public IList<string>? AllowedHosts { get; set; }

    /// <summary>
    /// Hosts whose files are verified by torchvision's hash prefix in the name (<c>resnet50-0676ba61.pth</c>);
    /// a download from any other host needs the job's SHA-256. Null: <see cref="DefaultHost"/> only.
    /// </summary>
    public IList<string>? NameHashHosts { get; set; }

    /// <summary>
    /// Also allow Hugging Face hub downloads (https://huggingface.co/OWNER/NAME/resolve/REVISION/FILE, verified
    /// by the job's sha256): the hub and the storage hosts it redirects file downloads to.
    /// </summary>
    public bool AllowHuggingFaceHub { get; set; }

    public static IReadOnlyList<string> HuggingFaceHosts { get; } =
        ["huggingface.co", "cdn-lfs.huggingface.co", "cdn-lfs-us-1.huggingface.co", "cdn-lfs.hf.co", "cas-bridge.xethub.hf.co"];


    /// <summary>
    /// Where weights named by torchvision's names are downloaded from: torchvision's own folder, or a mirror of it (its host
    /// must be allowed, and among <see cref="NameHashHosts"/> so that the hash prefix in each name verifies it).
    /// </summary>
    public string TorchvisionModelsUrl { get; set; } = TorchvisionWeights.ModelsUrl;

    /// <summary>Plain http for the allowed hosts, e.g. a mirror on the local network. Off: https only.</summary>
    public bool AllowHttp { get; set; }

    /// <summary>
    /// A weights file larger than this is stopped and discarded: torchvision's largest (vit_h_14's, regnet_y_128gf's) are
    /// 2.5–2.6 GB; a torch.save archive may describe at most 4 GiB (<see cref="PyTorchFormat.MaxTotalBytes"/>).
    /// </summary>
    public long MaxBytes { get; set; } = PyTorchFormat.MaxTotalBytes;

    /// <summary>A download that sends no byte for this long is abandoned (a stalled server must not hold the worker).</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>A download not finished in this time is abandoned, however steadily it trickles.</summary>
    public TimeSpan Deadline { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>Tries at a host that cannot be reached (no such name, connection refused, TLS failure) before the run fails.</summary>
    public int UnreachableAttempts { get; set; } = 3;

    /// <summary>The wait before the second try at an unreachable host, doubled before each further one.</summary>
    public TimeSpan UnreachableRetryDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Redirects followed, each to an allowed host, before a download is refused.</summary>
    public int MaxRedirects { get; set; } = 5;

    /// <summary>Verified weights, named by their SHA-256, so each is fetched once.</summary>
    public string CacheDirectory { get; set; } = Path.Combine(".finetune", "weights");

    /// <summary>The hosts a download (and each of its redirects) may come from: the allowed hosts, and the hub's when allowed.</summary>
    public IReadOnlyList<string> EffectiveAllowedHosts =>
        [.. NonBlank(AllowedHosts) ?? [DefaultHost], .. AllowHuggingFaceHub ? HuggingFaceHosts : []];

    public IReadOnlyList<string> EffectiveNameHashHosts => NonBlank(NameHashHosts) ?? [DefaultHost];

    private static List<string>? NonBlank(IList<string>? hosts) =>
        hosts is null ? null : hosts.Where(h => !string.IsNullOrWhiteSpace(h)).Select(h => h.Trim()).ToList();
}
