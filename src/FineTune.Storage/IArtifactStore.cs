namespace FineTune.Storage;

public enum WriteMode
{
    /// <summary>Fails with <see cref="ArtifactExistsException"/> when the name is taken (If-None-Match: *).</summary>
    CreateNew,
    Overwrite,
}

public sealed record ArtifactInfo(string Name, long Length, DateTimeOffset LastModified);

/// <summary>
/// Where a run's artifacts live: weights, checkpoints, features, reports and published models, by name.
/// Names are '/'-separated paths checked by <see cref="ArtifactNames"/>; a write becomes visible whole or not at all.
/// </summary>
public interface IArtifactStore
{
    /// <summary>Where the artifacts are, for messages.</summary>
    string Location { get; }

    Task WriteAsync(string name, Stream content, WriteMode mode, CancellationToken cancellationToken);

    /// <summary>Throws <see cref="ArtifactNotFoundException"/> when there is no such artifact.</summary>
    Task<Stream> OpenReadAsync(string name, CancellationToken cancellationToken);

    Task<bool> ExistsAsync(string name, CancellationToken cancellationToken);

    /// <summary>Artifacts whose names start with <paramref name="prefix"/>, in ordinal name order.</summary>
    IAsyncEnumerable<ArtifactInfo> ListAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>Returns whether something was deleted.</summary>
    Task<bool> DeleteAsync(string name, CancellationToken cancellationToken);
}

public sealed class ArtifactExistsException(string name, string location)
    : IOException($"'{name}' already exists in {location}")
{
    public string Name { get; } = name;
}

public sealed class ArtifactNotFoundException(string name, string location)
    : FileNotFoundException($"'{name}' does not exist in {location}")
{
    public string Name { get; } = name;
}
