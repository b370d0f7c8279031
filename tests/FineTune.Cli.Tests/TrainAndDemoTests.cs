using System.Text.Json;

namespace FineTune.Cli.Tests;

public sealed class TrainAndDemoTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void DemoFineTunesBundledWeightsOnRealPhotosAndPublishes()
    {
        var (exit, output, error) = FinetuneProcess.Run(_dir, "demo", "--epochs", "3");

        Assert.True(exit == ExitCodes.Succeeded, $"exit {exit}: {error}\n{output}");
        Assert.Contains("top-1 accuracy", output);
        Assert.Contains("  completed", output);
        // Output to a pipe: every epoch's line once, in order, however the polls fell.
        var epochLines = output.Split('\n').Where(l => l.StartsWith("  epoch ", StringComparison.Ordinal) && l.Contains(" done ", StringComparison.Ordinal)).ToList();
        Assert.Equal(["1/3", "2/3", "3/3"], epochLines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
        string published = Path.Combine(_dir, ".finetune", "artifacts", "runs", "demo-3", "published");
        Assert.True(File.Exists(Path.Combine(published, "model.safetensors")));
        var card = JsonDocument.Parse(File.ReadAllText(Path.Combine(published, "model-card.json"))).RootElement;
        Assert.Equal(["animals", "food", "household", "plants", "town"], card.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
        Assert.True(card.GetProperty("metrics").GetProperty("top1Accuracy").GetDouble() >= 0.8);
        foreach (var plot in new[] { "loss.png", "accuracy.png", "confusion-matrix.png" })
        {
            var png = File.ReadAllBytes(Path.Combine(_dir, ".finetune", "artifacts", "runs", "demo-3", "reports", plot));
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        }

        // predict on the published model agrees with the evaluation report's per-image predictions
        var rows = File.ReadAllLines(Path.Combine(_dir, ".finetune", "artifacts", "runs", "demo-3", "reports", "predictions.csv")).Skip(1)
            .Select(line => line.Split(',')).ToList();
        var predicted = FinetuneProcess.Run(_dir, ["predict", "--model", "demo-3", "--top", "1", .. rows.Select(r => r[0])]);
        Assert.True(predicted.ExitCode == ExitCodes.Succeeded, predicted.Error);
        var answers = JsonDocument.Parse(predicted.Output).RootElement.EnumerateArray().ToList();
        Assert.Equal(rows.Count, answers.Count);
        foreach (var (row, answer) in rows.Zip(answers))
        {
            var best = answer.GetProperty("predictions")[0];
            Assert.Equal(row[2], best.GetProperty("class").GetString());
            double reported = double.Parse(row[3], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(Math.Abs(reported - best.GetProperty("probability").GetDouble()) <= 1e-5, $"{row[0]}: report {reported}, predict {best}");
        }

        var status = FinetuneProcess.Run(_dir, "status", "demo-3");
        Assert.Equal(ExitCodes.Succeeded, status.ExitCode);
        Assert.StartsWith("demo-3: published, 3 epoch(s) done", status.Output);
        Assert.Matches(@"^demo-3\s+published\s+3 epochs", FinetuneProcess.Run(_dir, "list").Output);
        Assert.Equal(ExitCodes.BadInput, FinetuneProcess.Run(_dir, "status", "unknown-run").ExitCode);

        var again = FinetuneProcess.Run(_dir, "demo", "--epochs", "3");
        Assert.Equal(ExitCodes.Succeeded, again.ExitCode);
        Assert.Equal(card.GetProperty("weights").GetProperty("safetensorsSha256").GetString(),
            JsonDocument.Parse(File.ReadAllText(Path.Combine(published, "model-card.json"))).RootElement
                .GetProperty("weights").GetProperty("safetensorsSha256").GetString());
    }

    [Fact]
    public void PredictWithoutAPublishedModelIsBadInput()
    {
        var (exit, _, error) = FinetuneProcess.Run(_dir, "predict", "--model", "no-such-run", "x.png");
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains("model: no published model in", error);
    }

    [Fact]
    public void UnreachableStorageIsItsOwnExitCodeWithoutAStackTrace()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "photos", "a"));
        const string nowhere = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;";
        var (exit, _, error) = FinetuneProcess.Run(_dir, "train", "--dataset", "photos", "--storage", nowhere);
        Assert.Equal(ExitCodes.StorageUnreachable, exit);
        Assert.StartsWith("storage: cannot reach http://127.0.0.1:9/devstoreaccount1", error);
        Assert.DoesNotContain("   at ", error);
        Assert.Equal(ExitCodes.StorageUnreachable, FinetuneProcess.Run(_dir, "train", "--dataset", "photos", "--storage", "not a connection string").ExitCode);
    }

    [Fact]
    public void MissingDatasetIsBadInputWithTheReason()
    {
        var (exit, _, error) = FinetuneProcess.Run(_dir, "train", "--dataset", "no-such-folder");
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains("dataset: '", error);
        Assert.Contains("no-such-folder' does not exist", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void BadJobFileFieldsAreListedAsBadInput()
    {
        File.WriteAllText(Path.Combine(_dir, "job.json"), """{ "model": "resnet19", "training": { "epochs": 0 }, "dataset": { "location": "." } }""");
        var (exit, _, error) = FinetuneProcess.Run(_dir, "train", "job.json");
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains("job spec: model: unknown model family 'resnet19'", error);
        Assert.Contains("job spec: training.epochs: must be 1-10000", error);
    }

    [Fact]
    public void UnreadableJobFileIsBadInput()
    {
        File.WriteAllText(Path.Combine(_dir, "broken.json"), "{ not json");
        var (exit, _, error) = FinetuneProcess.Run(_dir, "train", "broken.json");
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.StartsWith("job", error);
    }

    [Fact]
    public void DatasetThatCannotTrainFailsWithItsReasonAndNoStackTrace()
    {
        TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "one-class"), 3, ["food"]);
        var (exit, _, error) = FinetuneProcess.Run(_dir, "train", "--dataset", "one-class", "--epochs", "1");
        Assert.Equal(ExitCodes.BadInput, exit);
        Assert.Contains("only one class (food): a classifier needs at least two", error);
        Assert.DoesNotContain("   at ", error);
    }
}
