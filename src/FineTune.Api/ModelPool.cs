using FineTune.Core.Evaluation;
using FineTune.Core.Models;
using FineTune.Storage;
using FineTune.Workflow.Services;
using Microsoft.Extensions.Options;

namespace FineTune.Api;

/// <summary>
/// Published models kept loaded between predict calls (the most recently used <see cref="ApiOptions.LoadedModels"/>),
/// and a bound on how many batches of images are classified at once, whatever the number of requests.
/// </summary>
public sealed class ModelPool : IDisposable
{
    private readonly IArtifactStore _store;
    private readonly ApiOptions _options;
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _loading = new(1, 1);
    private readonly LinkedList<Loaded> _recent = new();

    public ModelPool(IArtifactStore store, IOptions<ApiOptions> options)
    {
        _store = store;
        _options = options.Value;
        _slots = new SemaphoreSlim(Math.Max(1, _options.PredictConcurrency));
    }

    /// <summary>How many times a model was loaded from storage (a second call on the same run loads nothing).</summary>
    public int Loads { get; private set; }

    /// <summary>Top-<paramref name="top"/> classes of each image file; null when the run has no published model.</summary>
    public async Task<IReadOnlyList<IReadOnlyList<ClassProbability>>?> PredictAsync(string runId, IReadOnlyList<string> images, int top, CancellationToken cancellationToken)
    {
        var model = await AcquireAsync(runId, cancellationToken);
        if (model is null) return null;
        try
        {
            var answers = new List<IReadOnlyList<ClassProbability>>();
            foreach (var batch in images.Chunk(Predictor.DefaultBatchSize))
            {
                await _slots.WaitAsync(cancellationToken);
                try
                {
                    // Decoding and the forward pass are CPU work: off the request thread, a batch per forward.
                    answers.AddRange(await Task.Run(() => model.Predictor.PredictBatch(batch, top), cancellationToken));
                }
                finally
                {
                    _slots.Release();
                }
            }
            return answers;
        }
        finally
        {
            Release(model);
        }
    }

    private async Task<Loaded?> AcquireAsync(string runId, CancellationToken cancellationToken)
    {
        await _loading.WaitAsync(cancellationToken);
        try
        {
            var node = _recent.First;
            while (node is not null && node.Value.RunId != runId) node = node.Next;
            if (node is null)
            {
                var loaded = await LoadAsync(runId, cancellationToken);
                if (loaded is null) return null;
                node = _recent.AddFirst(loaded);
                while (_recent.Count > Math.Max(1, _options.LoadedModels))
                {
                    var evicted = _recent.Last!.Value;
                    _recent.RemoveLast();
                    evicted.Evicted = true;
                    if (evicted.Users == 0) evicted.Predictor.Dispose();
                }
            }
            else if (node != _recent.First)
            {
                _recent.Remove(node);
                _recent.AddFirst(node);
            }
            node.Value.Users++;
            return node.Value;
        }
        finally
        {
            _loading.Release();
        }
    }

    private void Release(Loaded model)
    {
        _loading.Wait();
        try
        {
            // An evicted model is unloaded by the last request that was still using it.
            if (--model.Users == 0 && model.Evicted) model.Predictor.Dispose();
        }
        finally
        {
            _loading.Release();
        }
    }

    private async Task<Loaded?> LoadAsync(string runId, CancellationToken cancellationToken)
    {
        var layout = new RunLayout(runId);
        if (!await _store.ExistsAsync(layout.ModelCard, cancellationToken) || !await _store.ExistsAsync(layout.Safetensors, cancellationToken)) return null;
        string folder = Directory.CreateDirectory(Path.Combine(_options.ModelCacheDirectory, runId, Guid.NewGuid().ToString("N"))).FullName;
        try
        {
            foreach (var file in RunLayout.LoadableModelFiles)
            {
                await using var input = await _store.OpenReadAsync(layout.Published + file, cancellationToken);
                await using var output = File.Create(Path.Combine(folder, file));
                await input.CopyToAsync(output, cancellationToken);
            }
            string cardPath = Path.Combine(folder, RunLayout.ModelCardFile);
            var card = ModelCard.Read(await File.ReadAllBytesAsync(cardPath, cancellationToken), cardPath);
            var predictor = Predictor.Load(ModelRegistry.Get(card.Model), card.Classes, Path.Combine(folder, RunLayout.SafetensorsFile), card.Preprocessing);
            Loads++;
            return new Loaded(runId, predictor);
        }
        finally
        {
            // The weights are in memory now; the files were only the loader's way in.
            Directory.Delete(folder, recursive: true);
        }
    }

    public void Dispose()
    {
        foreach (var model in _recent) model.Predictor.Dispose();
        _recent.Clear();
        _slots.Dispose();
        _loading.Dispose();
    }

    private sealed class Loaded(string runId, Predictor predictor)
    {
        public string RunId { get; } = runId;
        public Predictor Predictor { get; } = predictor;
        public int Users { get; set; }
        public bool Evicted { get; set; }
    }
}
