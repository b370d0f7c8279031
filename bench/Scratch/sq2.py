import torch, time
torch.set_num_threads(2)
cl=torch.channels_last
sq=torch.nn.Conv2d(64,16,1).eval().to(memory_format=cl); e1=torch.nn.Conv2d(16,64,1).eval().to(memory_format=cl); e3=torch.nn.Conv2d(16,64,3,padding=1).eval().to(memory_format=cl)
x=torch.randn(8,64,55,55).contiguous(memory_format=cl)
relu=torch.nn.ReLU(inplace=True)
t=[1e9]*6
with torch.no_grad():
  for p in range(20):
    s0=time.perf_counter(); s=sq(x); t[0]=min(t[0],time.perf_counter()-s0)
    s0=time.perf_counter(); relu(s); t[1]=min(t[1],time.perf_counter()-s0)
    s0=time.perf_counter(); a=e1(s); t[2]=min(t[2],time.perf_counter()-s0)
    s0=time.perf_counter(); b=e3(s); t[3]=min(t[3],time.perf_counter()-s0)
    s0=time.perf_counter(); relu(a); relu(b); t[4]=min(t[4],time.perf_counter()-s0)
    s0=time.perf_counter(); o=torch.cat([a,b],1); t[5]=min(t[5],time.perf_counter()-s0)
    if p==0: print("strides", s.stride(), o.stride())
print("squeeze relu e1 e3 relus cat:", " ".join(f"{v*1e3:.2f}" for v in t))
