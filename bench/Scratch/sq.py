import torch, torchvision, time, sys
torch.set_num_threads(int(sys.argv[3]))
m=getattr(torchvision.models, sys.argv[1])().eval()
if sys.argv[2]=='1': m=m.to(memory_format=torch.channels_last)
x0=torch.randn(8,3,224,224)
times=[1e9]*len(m.features)
with torch.no_grad():
  for p in range(10):
    x=x0
    for i,l in enumerate(m.features):
      s=time.perf_counter(); x=l(x); t=(time.perf_counter()-s)*1e3
      if p>2: times[i]=min(times[i],t)
for i,t in enumerate(times): print(i, f"{t:.2f}")
print("total", f"{sum(times):.2f}")
