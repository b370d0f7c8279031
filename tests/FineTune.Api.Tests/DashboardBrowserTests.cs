using System.IO.Compression;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace FineTune.Api.Tests;

/// <summary>The dashboard in real Chromium (Debian's chromium and chromium-driver), headless, against <c>finetune serve</c>.</summary>
public sealed class DashboardBrowserTests
{
    private const string Chromium = "/usr/bin/chromium";
    private const string ChromeDriver = "/usr/bin/chromedriver";

    [Fact]
    public async Task ARunStartedFromTheFormShowsItsEpochsAndCurvesThenItsModelDownloadsAndPredictsAPhoto()
    {
        await using var serve = await ServeProcess.StartAsync();
        string zip = Path.Combine(serve.WorkDirectory, "photos.zip");
        await File.WriteAllBytesAsync(zip, TuxPaintStamps.CreateZip(perClass: 5, ApiScenarios.Classes));
        string downloads = Directory.CreateDirectory(Path.Combine(serve.WorkDirectory, "downloads")).FullName;
        using var browser = Chrome(downloads);
        var wait = new WebDriverWait(browser, TimeSpan.FromMinutes(3)) { PollingInterval = TimeSpan.FromMilliseconds(100) };
        // The dashboard redraws its charts and tables on every status poll: an element found a moment before may be
        // gone by the time it is read, and the next poll finds its replacement.
        wait.IgnoreExceptionTypes(typeof(StaleElementReferenceException));
        // The URL serve printed: the page turns its token into a cookie and drops it from the address.
        browser.Navigate().GoToUrl(serve.DashboardUrl);
        Assert.Equal(new Uri(serve.Url, "/"), new Uri(browser.Url));

        browser.FindElement(By.Id("dataset")).SendKeys(zip);
        var epochs = browser.FindElement(By.Id("epochs"));
        epochs.Clear();
        epochs.SendKeys("6");
        browser.FindElement(By.CssSelector("#resize option[value=pad]")).Click();
        // Without the feature cache every epoch runs the whole network: slow enough to watch.
        browser.FindElement(By.Id("spec-extra")).SendKeys("""{ "jobId": "browser", "training": { "batchSize": 2, "featureCache": false } }""");
        browser.FindElement(By.Id("start")).Click();

        var epochsSeen = new SortedSet<int>();
        var stagesSeen = new HashSet<string>();
        wait.Until(b =>
        {
            if (int.TryParse(b.FindElement(By.Id("epoch")).GetDomAttribute("data-done"), out int done)) epochsSeen.Add(done);
            stagesSeen.Add(b.FindElement(By.Id("stage")).Text + (b.FindElement(By.Id("eta")).Text.Contains("ETA", StringComparison.Ordinal) ? " with ETA" : ""));
            return b.FindElement(By.Id("run-status")).Text is "Completed" or "Failed";
        });
        Assert.Equal("Completed", browser.FindElement(By.Id("run-status")).Text);
        Assert.Contains(epochsSeen, e => e is > 0 and < 6);
        Assert.Equal(6, epochsSeen.Max);
        Assert.Contains("training with ETA", stagesSeen);
        wait.Until(b => b.FindElement(By.CssSelector("#loss-chart polyline.validation")).GetDomAttribute("data-points") == "6");
        wait.Until(b => b.FindElement(By.CssSelector("#accuracy-chart polyline.train")).GetDomAttribute("points")!.Split(' ').Length == 6);
        wait.Until(b => b.FindElements(By.CssSelector("#confusion tr")).Count == 4);
        Assert.Equal(4, browser.FindElements(By.CssSelector("#per-class tr")).Count);

        browser.FindElement(By.CssSelector("#downloads a[data-artifact=model]")).Click();
        string model = Path.Combine(downloads, "browser-model.safetensors");
        long published = new FileInfo(Path.Combine(serve.ArtifactRoot, "runs/browser/published/model.safetensors")).Length;
        wait.Until(_ => File.Exists(model) && new FileInfo(model).Length == published);

        browser.FindElement(By.Id("predict-image")).SendKeys(TuxPaintStamps.Images("animals", 1)[0]);
        browser.FindElement(By.Id("predict")).Click();
        var classes = wait.Until(b => b.FindElements(By.CssSelector("#predictions li.class-probability")) is { Count: 3 } items ? items : null);
        Assert.All(classes, item => Assert.Matches(@"^(animals|food|plants) \d+\.\d%", item.Text));
        Screenshot(browser.FindElement(By.Id("run-view")), "predict");
    }

    /// <summary>
    /// Every view of the dashboard as a user works in it, on real runs: the model picker starts a run whose curves,
    /// per-class table and misclassified images (with their top 3) show; a sweep's trials sort by column; two runs'
    /// validation curves share a chart; the run list pages; a run is cancelled, restarted and purged from its buttons.
    /// </summary>
    [Fact]
    public async Task EveryViewWorksOnRealRunsAndIsPhotographed()
    {
        await using var serve = await ServeProcess.StartAsync();
        string zip = Path.Combine(serve.WorkDirectory, "twins.zip");
        await File.WriteAllBytesAsync(zip, TwinsZip());
        using var http = new HttpClient { BaseAddress = serve.Url };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", serve.Token);
        using var browser = Chrome(Directory.CreateDirectory(Path.Combine(serve.WorkDirectory, "downloads")).FullName);
        var wait = new WebDriverWait(browser, TimeSpan.FromMinutes(10)) { PollingInterval = TimeSpan.FromMilliseconds(100) };
        wait.IgnoreExceptionTypes(typeof(StaleElementReferenceException), typeof(NoSuchElementException), typeof(NoAlertPresentException));
        browser.Navigate().GoToUrl(serve.DashboardUrl);

        // The picker: a family, its builder, its weights; the input those weights expect.
        wait.Until(b => b.FindElements(By.CssSelector("#model-family option")).Count > 1);
        Pick(browser, "model-family", "ResNet");
        Pick(browser, "model", "resnet50");
        Pick(browser, "weights", "IMAGENET1K_V2");
        Assert.StartsWith("input 224×224 · resize 232 then crop · bilinear · RGB", browser.FindElement(By.Id("preprocessing")).Text, StringComparison.Ordinal);
        Screenshot(browser.FindElement(By.Id("new-run")), "new-run");
        string cntk = browser.FindElements(By.CssSelector("#model-family option")).Select(o => o.GetDomAttribute("value")!).Single(f => f.Contains("CNTK", StringComparison.OrdinalIgnoreCase));
        Pick(browser, "model-family", cntk);
        Assert.Equal(("resnet18-cntk", "bundled"), (Selected(browser, "model"), Selected(browser, "weights")));
        Assert.Contains("minus a mean image", browser.FindElement(By.Id("preprocessing")).Text, StringComparison.Ordinal);
        browser.FindElement(By.Id("dataset")).SendKeys(zip);
        var epochs = browser.FindElement(By.Id("epochs"));
        epochs.Clear();
        epochs.SendKeys("2");
        browser.FindElement(By.Id("spec-extra")).SendKeys("""{ "jobId": "picked", "training": { "batchSize": 4 } }""");
        browser.FindElement(By.Id("start")).Click();
        // A sweep of two trials beside it, on the same upload.
        using (var sweep = await http.PostAsync("api/finetune", Upload(zip,
            """{ "jobId": "sweep", "training": { "epochs": 2, "batchSize": 4 }, "sweep": { "parameters": { "training.learningRate": [0.01, 0.001] } } }""")))
            Assert.Equal(System.Net.HttpStatusCode.Accepted, sweep.StatusCode);

        // The run: curves, per-class precision and recall, and the images it got wrong (two classes of one photo: one of each pair is).
        wait.Until(b => b.FindElement(By.Id("run-status")).Text is "Completed" or "Failed");
        Assert.Equal("Completed", browser.FindElement(By.Id("run-status")).Text);
        Assert.Equal((true, true, false), (Disabled(browser, "cancel"), Disabled(browser, "restart"), Disabled(browser, "purge")));
        wait.Until(b => b.FindElement(By.CssSelector("#loss-chart polyline.validation")).GetDomAttribute("data-points") == "2");
        wait.Until(b => b.FindElements(By.CssSelector("#per-class tr")).Count == 5);
        var mistakes = wait.Until(b => b.FindElements(By.CssSelector("#misclassified figure")) is { Count: > 0 } found ? found : null);
        Assert.All(mistakes, m => Assert.Equal(3, m.FindElements(By.CssSelector("li.class-probability")).Count));
        Assert.All(mistakes, m => Assert.Matches(@"^true: (animals|food|twin-a|twin-b)", m.FindElement(By.TagName("strong")).Text));
        wait.Until(b => (bool)((IJavaScriptExecutor)b).ExecuteScript("return [...document.querySelectorAll('#misclassified img')].every(i => i.complete && i.naturalWidth === 128)")!);
        browser.FindElement(By.CssSelector("#per-class th[data-key=recall]")).Click();
        var recalls = browser.FindElements(By.CssSelector("#per-class tr td:nth-child(3)")).Select(c => double.Parse(c.Text.TrimEnd('%'), System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(recalls.Order(), recalls);
        Screenshot(browser.FindElement(By.Id("run-view")), "run");
        Screenshot(browser.FindElement(By.Id("evaluation")), "evaluation");

        // The sweep's trials, sorted by the swept learning rate one way, then the other.
        wait.Until(b => b.FindElements(By.CssSelector("#runs tr[data-id=sweep]")).Count == 1);
        Click(wait, "#runs tr[data-id=sweep] td:nth-child(2)");
        wait.Until(b => b.FindElement(By.Id("run-id")).Text == "sweep" && b.FindElement(By.Id("run-status")).Text is "Completed" or "Failed");
        Assert.Equal("Completed", browser.FindElement(By.Id("run-status")).Text);
        wait.Until(b => b.FindElements(By.CssSelector("#trials tr")).Count == 3);
        var rateColumn = By.CssSelector("#trials th[data-key='p:training.learningRate']");
        browser.FindElement(rateColumn).Click();
        Assert.Equal(["0.001", "0.01"], TrialRates(browser));
        Assert.Equal("ascending", browser.FindElement(rateColumn).GetDomAttribute("aria-sort"));
        browser.FindElement(rateColumn).Click();
        Assert.Equal(["0.01", "0.001"], TrialRates(browser));
        Screenshot(browser.FindElement(By.Id("sweep")), "trials");

        // Two runs' validation curves on one chart: the run from the form and the sweep's other trial.
        Click(wait, "#runs input.compare[value=picked]");
        Click(wait, "#trials input.compare[value=sweep-t1]");
        wait.Until(b => b.FindElement(By.Id("compare")).Displayed);
        foreach (string series in (string[])["run-a", "run-b"])
            wait.Until(b => b.FindElement(By.CssSelector($"#compare-accuracy-chart polyline.{series}")).GetDomAttribute("data-points") == "2");
        Assert.Equal("picked and sweep-t1", browser.FindElement(By.Id("compare-runs")).Text);
        Screenshot(browser.FindElement(By.Id("compare")), "compare");

        // The run list a row per page: Next walks every run, Previous comes back.
        var pageSize = browser.FindElement(By.Id("page-size"));
        pageSize.Clear();
        pageSize.SendKeys("1" + Keys.Tab);
        var seen = new List<string>();
        int pages = 0;
        while (true)
        {
            pages++;
            var ids = wait.Until(b => b.FindElement(By.Id("page-number")).Text == $"page {pages}" && b.FindElements(By.CssSelector("#runs tr")) is { Count: <= 1 } rows
                ? rows.Select(r => r.GetDomAttribute("data-id")!).ToList() : null);
            seen.AddRange(ids);
            if (pages == 2) Screenshot(browser.FindElement(By.Id("runs-view")), "runs");
            if (Disabled(browser, "next-page")) break;
            browser.FindElement(By.Id("next-page")).Click();
        }
        Assert.Subset(seen.ToHashSet(), new HashSet<string> { "picked", "sweep" });
        Assert.Equal(seen.Count, seen.Distinct().Count());
        browser.FindElement(By.Id("previous-page")).Click();
        wait.Until(b => b.FindElement(By.Id("page-number")).Text == $"page {pages - 1}");

        // Cancel, restart, cancel again, purge: from the run's buttons, each enabled only where the run's state allows it.
        using (var slow = await http.PostAsync("api/finetune", Upload(zip, """{ "jobId": "slow", "training": { "epochs": 30, "batchSize": 2, "featureCache": false } }""")))
            Assert.Equal(System.Net.HttpStatusCode.Accepted, slow.StatusCode);
        pageSize.Clear();
        pageSize.SendKeys("20" + Keys.Tab);
        wait.Until(b => b.FindElements(By.CssSelector("#runs tr[data-id=slow]")).Count == 1);
        Click(wait, "#runs tr[data-id=slow] td:nth-child(2)");
        for (int attempt = 0; attempt < 2; attempt++)
        {
            wait.Until(b => b.FindElement(By.Id("run-id")).Text == "slow" && b.FindElement(By.Id("stage")).Text == "training" && !Disabled(b, "cancel"));
            Assert.Equal((true, true), (Disabled(browser, "restart"), Disabled(browser, "purge")));
            browser.FindElement(By.Id("cancel")).Click();
            wait.Until(b => b.FindElement(By.Id("run-status")).Text == "Terminated");
            wait.Until(b => !Disabled(b, "restart") && !Disabled(b, "purge") && Disabled(b, "cancel"));
            if (attempt == 0) browser.FindElement(By.Id("restart")).Click();
        }
        Screenshot(browser.FindElement(By.Id("run-view")), "actions");
        browser.FindElement(By.Id("purge")).Click();
        var confirm = wait.Until(b => b.SwitchTo().Alert());
        Assert.Contains("Purge run slow?", confirm.Text, StringComparison.Ordinal);
        confirm.Accept();
        wait.Until(b => !b.FindElement(By.Id("run-view")).Displayed && b.FindElements(By.CssSelector("#runs tr[data-id=slow]")).Count == 0);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync("api/finetune/slow")).StatusCode);
    }

    /// <summary>animals and food, and two classes of copies of one photo, which no model tells apart.</summary>
    private static byte[] TwinsZip()
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (string category in (string[])["animals", "food"])
                foreach (var (image, i) in TuxPaintStamps.Images(category, 5).Select((image, i) => (image, i)))
                    zip.CreateEntryFromFile(image, $"{category}/{i}.png");
            string twin = TuxPaintStamps.Images("plants", 1)[0];
            foreach (string category in (string[])["twin-a", "twin-b"])
                for (int i = 0; i < 5; i++) zip.CreateEntryFromFile(twin, $"{category}/{i}.png");
        }
        return buffer.ToArray();
    }

    private static MultipartFormDataContent Upload(string zip, string spec)
    {
        var dataset = new ByteArrayContent(File.ReadAllBytes(zip));
        dataset.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/zip");
        return new MultipartFormDataContent { { dataset, "dataset", "twins.zip" }, { new StringContent(spec), "spec" } };
    }

    /// <summary>Clicks the element, found again where a refresh of the list replaced it meanwhile.</summary>
    private static void Click(WebDriverWait wait, string selector) => wait.Until(b =>
    {
        b.FindElement(By.CssSelector(selector)).Click();
        return true;
    });

    private static void Pick(ChromeDriver browser, string select, string value) =>
        browser.FindElement(By.CssSelector($"#{select} option[value='{value}']")).Click();

    private static string? Selected(ChromeDriver browser, string select) => browser.FindElement(By.Id(select)).GetDomProperty("value");

    private static bool Disabled(IWebDriver browser, string id) => !browser.FindElement(By.Id(id)).Enabled;

    private static List<string> TrialRates(ChromeDriver browser)
    {
        int column = browser.FindElements(By.CssSelector("#trials th")).Select(th => th.GetDomAttribute("data-key")).ToList().IndexOf("p:training.learningRate") + 1;
        return [.. browser.FindElements(By.CssSelector($"#trials tr td:nth-child({column})")).Select(c => c.Text)];
    }

    /// <summary>
    /// A view as the test saw it, kept as a test artifact: <c>$FINETUNE_TEST_ARTIFACTS/screenshots/NAME.png</c>, else
    /// <c>TestResults/screenshots</c> under the test's folder.
    /// </summary>
    private static void Screenshot(IWebElement view, string name)
    {
        string root = Environment.GetEnvironmentVariable("FINETUNE_TEST_ARTIFACTS") is { Length: > 0 } artifacts ? artifacts : Path.Combine(AppContext.BaseDirectory, "TestResults");
        string folder = Directory.CreateDirectory(Path.Combine(root, "screenshots")).FullName;
        ((ITakesScreenshot)view).GetScreenshot().SaveAsFile(Path.Combine(folder, name + ".png"));
    }

    [Fact]
    public async Task TheApiReferencePageOpensFromTheTokenUrlAndDescribesEveryRouteOffline()
    {
        await using var serve = await ServeProcess.StartAsync();
        using var browser = Chrome(Directory.CreateDirectory(Path.Combine(serve.WorkDirectory, "downloads")).FullName);
        var wait = new WebDriverWait(browser, TimeSpan.FromMinutes(1)) { PollingInterval = TimeSpan.FromMilliseconds(100) };

        // As the dashboard's URL: the token becomes the cookie the page's fetch of the OpenAPI document sends.
        browser.Navigate().GoToUrl(new Uri(serve.Url, "/docs?token=" + serve.Token));

        // Scalar's script is served by the app (no CDN is reachable here): the routes' summaries come from our document.
        wait.Until(b => b.PageSource.Contains("Classify images", StringComparison.Ordinal));
        Assert.Contains("Start a run from a JSON job spec", browser.PageSource, StringComparison.Ordinal);
        Assert.DoesNotContain("token=", browser.Url, StringComparison.Ordinal);
        Assert.StartsWith(new Uri(serve.Url, "/docs").ToString(), browser.Url, StringComparison.Ordinal);
    }

    internal static ChromeDriver Chrome(string downloads)
    {
        if (!File.Exists(Chromium) || !File.Exists(ChromeDriver))
            throw new InvalidOperationException("Chromium is not installed: apt-get install chromium chromium-driver (as .ci/run does)");
        var options = new ChromeOptions { BinaryLocation = Chromium };
        // As root in a container: no sandbox; /dev/shm is small there.
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000");
        options.AddUserProfilePreference("download.default_directory", downloads);
        options.AddUserProfilePreference("download.prompt_for_download", false);
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        return new ChromeDriver(service, options, TimeSpan.FromMinutes(1));
    }
}
