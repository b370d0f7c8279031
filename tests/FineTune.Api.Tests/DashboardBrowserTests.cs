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
        // To look at what the test saw: FINETUNE_DASHBOARD_SCREENSHOT=/tmp/dashboard.png
        if (Environment.GetEnvironmentVariable("FINETUNE_DASHBOARD_SCREENSHOT") is { Length: > 0 } screenshot)
            ((ITakesScreenshot)browser).GetScreenshot().SaveAsFile(screenshot);
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
