"""meterbench.pipelines"""
