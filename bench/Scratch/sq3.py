import torch, time,sys
torch.set_num_threads(int(sys.argv[1]))
for cl in (True,False):
  a=torch.randn(8,64,55,55); b=torch.randn(8,64,55,55)
  if cl: a=a.contiguous(memory_format=torch.channels_last); b=b.contiguous(memory_format=torch.channels_last)
  best=bc=1e9
  for p in range(20):
    s=time.perf_counter(); o=torch.cat([a,b],1); best=min(best,time.perf_counter()-s)
    s=time.perf_counter(); o=a.clone(); bc=min(bc,time.perf_counter()-s)
  print("cl",cl,"cat",f"{best*1e3:.2f}","clone",f"{bc*1e3:.2f}")
