# bench/run --plot: delivery ratio and p99 latency against offered load.
set terminal pngcairo size 1100,800 noenhanced
set output 'ingest_sweep.png'
set multiplot layout 2,1 title 'ingest, 100 peers, 128 B payloads; nproc 2, Intel(R) Xeon(R) Processor; 2026-11-23, commit 963b49f'
set grid
set key bottom left
set logscale x
set format x '%.0s%c'
set xlabel 'offered load (messages/s, all peers)'
set ylabel 'delivery ratio (delivered / offered)'
set yrange [0:1.05]
plot 'ingest_sweep.dat' using 1:2 with linespoints lw 2 title 'gateway, Realtime (decrypt + route, null sink)', \
     'ingest_sweep.dat' using 1:4 with linespoints lw 2 title 'gateway, Reliable (acknowledged / offered)', \
     'ingest_sweep.dat' using 1:3 with linespoints lw 2 title 'raw recvmmsg ceiling (no crypto)', \
     'ingest_sweep.dat' using 1:10 with lines dt 2 title 'intentra-bench: sent / offered (generator limit)', \
     'ingest_sweep.dat' using 1:11 with lines dt 3 title 'udp-blast: sent / offered (generator limit)'
set key top left
set logscale y
set ylabel 'p99 latency (ms)'
set yrange [*:*]
plot 'ingest_sweep.dat' using 1:5 with linespoints title 'Reliable send -> ack (intentra-bench)', \
     'ingest_sweep.dat' using 1:6 with linespoints title 'Realtime receive -> sink (gateway /metrics)'
unset multiplot
