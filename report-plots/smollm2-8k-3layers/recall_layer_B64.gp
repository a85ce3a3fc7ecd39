set terminal png size 900,540
set output 'recall_layer_B64.png'
set grid
set key bottom right
set yrange [0:1.02]
set xlabel 'layer'
set ylabel 'attention-mass recall'
set title 'MSA mass recall by layer, block size 64 (thick: p50, thin: p5)'
plot 'recall_layer_B64.dat' using 1:2 with linespoints lw 2 lc 1 title 'k=4', 'recall_layer_B64.dat' using 1:3 with lines lw 1 lc 1 notitle, 'recall_layer_B64.dat' using 1:4 with linespoints lw 2 lc 2 title 'k=8', 'recall_layer_B64.dat' using 1:5 with lines lw 1 lc 2 notitle, 'recall_layer_B64.dat' using 1:6 with linespoints lw 2 lc 3 title 'k=16', 'recall_layer_B64.dat' using 1:7 with lines lw 1 lc 3 notitle, 'recall_layer_B64.dat' using 1:8 with linespoints lw 2 lc 4 title 'k=32', 'recall_layer_B64.dat' using 1:9 with lines lw 1 lc 4 notitle
