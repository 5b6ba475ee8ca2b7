module movieexample.com/tools/prometheus

go 1.26

require github.com/prometheus/prometheus v0.307.3 // indirect
